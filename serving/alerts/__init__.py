"""Alerts: rules and their judgement, the rule/incident store, the background evaluator and webhook delivery."""
