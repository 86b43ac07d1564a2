"""What a build writes and how it is read back: dist/ (its one owner), the wheel, the image."""
