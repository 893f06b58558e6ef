"""MMBench and MMBench-CN: the command (`mmbench`), the TSV (`mmbench_data`), the circular estimate, the upload."""
