"""Close the loop: infer on an unlabeled pool, score and select corner cases, label them, merge a new dataset version."""
