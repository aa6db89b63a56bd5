"""Sample twins TwinView generates itself, so demos and tests need no third-party models."""
