"""What a build packages: the model wheel and sdist (wheel.py, with PyPA build and twine) and the image (image.py)."""
