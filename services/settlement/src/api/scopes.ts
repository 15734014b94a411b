import type { ScopeTable } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';

/** Every SettlementService RPC and the scopes it needs; funding wallets is an admin act. */
export const settlementScopes: ScopeTable<typeof settlementv1.SettlementServiceService> = {
  approveCreditLine: ['settlement.credit'],
  creditDraw: ['settlement.credit'],
  creditSettle: ['settlement.credit'],
  getCreditStatus: ['settlement.read'],
  deposit: ['settlement.admin'],
  withdraw: ['settlement.admin'],
  executeSettlement: ['settlement.admin'],
  requestReimbursement: ['settlement.admin'],
};
