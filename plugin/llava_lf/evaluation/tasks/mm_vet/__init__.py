"""MM-Vet: the command and scoring (`mm_vet`), and its GPT grader (`mm_vet_grader`)."""
