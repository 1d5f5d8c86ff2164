"""Operations on the resource model: validation, cross-resource rules, idempotency, apply."""
