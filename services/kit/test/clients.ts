// Moved to @gantry/test-support (services/kit/test-support). This re-export only keeps the
// settlement and approvals tests and bench working until they import '@gantry/test-support/clients';
// delete it then.
export * from '@gantry/test-support/clients';
