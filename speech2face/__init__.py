"""Speech2Face Live command line package."""
