"""The model repository (/api/v1/models): base models, fine-tunes and adapters, from the catalog."""
