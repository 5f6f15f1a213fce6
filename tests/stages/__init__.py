"""Tests of lstm_ae.stages."""
