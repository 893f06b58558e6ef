"""MME: the command and scoring (`mme`), and the ground-truth tree (`mme_ground_truth`)."""
