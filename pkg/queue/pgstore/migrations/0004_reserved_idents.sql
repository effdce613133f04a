-- bhrd_reserved aborts the statement with SQLSTATE BH409, which the store
-- maps to queue.ErrReservedIdent: set_unblocked of an entry whose ident
-- belongs to an internal enforcer the caller is not. msg names the ident.
CREATE FUNCTION bhrd_reserved(msg text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'BH409', MESSAGE = msg;
END
$$;
