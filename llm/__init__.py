"""LLM calls behind retries, a circuit breaker and a response cache.

Knows nothing of bots or conversations; the only importer of ``openai``.
"""
