"""What two or more of the pipeline's packages use: JSON Lines, charts, image-token counts, the OpenAI client."""
