// taskcluster-client ships no types; tests use it as the external, untyped client it is for users.
declare module 'taskcluster-client';
