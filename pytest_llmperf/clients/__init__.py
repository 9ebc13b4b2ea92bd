"""Request senders: the aiohttp base, the OpenAI SSE client, the Ollama NDJSON client and the
in-process client.  The per-chunk hot path lives here and stays lean."""
