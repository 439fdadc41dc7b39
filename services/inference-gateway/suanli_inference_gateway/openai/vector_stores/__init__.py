"""/v1/vector_stores: knowledge bases in the shape of OpenAI's Vector Stores API."""
