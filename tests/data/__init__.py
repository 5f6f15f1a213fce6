"""Tests of lstm_ae.data."""
