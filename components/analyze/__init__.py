"""Understanding a dataset before training: checks against its definition, the labeling spec, reports."""
