"""Storage: the schema, the line-protocol encoder, the durable outbox, writers and the reader."""
