"""Tests of lstm_ae.serving."""
