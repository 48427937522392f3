"""What every kefu service shares: settings, event contracts, broker, database, artifacts, telemetry.

Nothing here imports from ``services``.
"""
