/**
 * A tenant's name (issue 18): what ClickHouse user and database names are made of in
 * `vigil tenants sync`, so one check at the door. '' is the default tenant, never named.
 */
export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** What a refused name was expected to be, for error reasons. */
export const TENANT_NAME_EXPECTED = 'a tenant name (1 to 64 of A-Z a-z 0-9 _ -, not starting with _ or -)';
