"""Shared service code: settings, message schemas, Kafka, fetching, uploads, retries, failure classes."""
