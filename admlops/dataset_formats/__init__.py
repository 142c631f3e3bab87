"""On-disk dataset formats: parsing and writing, with errors that name file and line."""
