"""Live check-ins: an anonymous pulse inside a meeting, revealed only when at least k answered."""
