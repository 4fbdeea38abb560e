"""Fuzz properties (hypothesis) of the serializer, the WebSocket engines and the whole core."""
