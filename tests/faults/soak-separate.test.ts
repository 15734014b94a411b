// The brief soak (tests/faults/soak/case.ts) with one process per service, wired by address.
import { soakCase } from './soak/case.js';

soakCase('separate');
