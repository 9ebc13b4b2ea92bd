"""Request senders: the HTTP base on our own HTTP/1.1 connections, the OpenAI SSE client, the
Ollama NDJSON client and the in-process client.  The per-chunk hot path lives here and stays
lean."""
