from mlpack.cli import main

raise SystemExit(main())
