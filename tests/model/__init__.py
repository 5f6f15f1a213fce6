"""Tests of lstm_ae.model."""
