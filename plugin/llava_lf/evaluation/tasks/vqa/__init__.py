"""The EvalAI-processed benchmarks: VQAv2 and VizWiz (uploads), TextVQA (M4C accuracy), and what they share
(`vqa_answers`: the answer normalisation and soft accuracy)."""
