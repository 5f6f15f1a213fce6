"""Tests of lstm_ae.tuning."""
