"""Release history, promotion and rollback for one SageMaker endpoint.

Lambda handlers (code root = lambda_src/releases):
  release_history.recorder.handler    SageMaker endpoint state changes + scheduled promotion sweep
  release_history.controller.handler  CloudWatch alarm state changes -> steady-state rollback
Operator CLI: python -m lambda_src.releases.release_history --help   (from the repo root)
Modules import each other relatively, so the package works under both import paths.
"""
