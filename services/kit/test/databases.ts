// Moved to @gantry/test-support (services/kit/test-support). This re-export only keeps the
// settlement and approvals tests and bench working until they import '@gantry/test-support/databases';
// delete it then.
export * from '@gantry/test-support/databases';
