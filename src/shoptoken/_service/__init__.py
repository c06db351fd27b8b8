"""The thread-hosted token service: a TokenManager for asyncio and synchronous apps."""
