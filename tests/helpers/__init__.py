"""What tests share: documents, projects, the CLI as a user runs it, HTTP and Docker clients, oracles."""
