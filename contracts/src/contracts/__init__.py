"""Shared contracts of the SME support portal: every event and command, its topic, key and version.

Services import these models and never each other. See `registry.TOPICS` for the topic map.
"""
from contracts.envelope import Envelope, Message, TRACE_HEADERS
from contracts.registry import TOPICS, TopicSpec, message_types, model_for, topic_of

__all__ = ["Envelope", "Message", "TRACE_HEADERS", "TOPICS", "TopicSpec", "message_types", "model_for", "topic_of"]
