"""Reading what the user owns: datasets, images, masks, histories and models. Read-only, always."""
