import type { ScopeTable } from '@gantry/kit';
import { settlementv1 } from '@gantry/proto';

/**
 * Every SettlementService RPC and the scopes it needs. Funding wallets and deciding which L2
 * operators speak for the house are admin acts; a `settlement.credit` token alone cannot settle,
 * since CreditSettle also needs a registered operator's attestation.
 */
export const settlementScopes: ScopeTable<typeof settlementv1.SettlementServiceService> = {
  approveCreditLine: ['settlement.credit'],
  creditDraw: ['settlement.credit'],
  creditSettle: ['settlement.credit'],
  getCreditStatus: ['settlement.read'],
  deposit: ['settlement.admin'],
  withdraw: ['settlement.admin'],
  registerOperatorKey: ['settlement.admin'],
  revokeOperatorKey: ['settlement.admin'],
  listOperatorKeys: ['settlement.read'],
  executeSettlement: ['settlement.admin'],
  requestReimbursement: ['settlement.admin'],
};
