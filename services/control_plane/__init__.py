"""Control plane: owns runtime controls such as the kill switch and degradation mode."""
