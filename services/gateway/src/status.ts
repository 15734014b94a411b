import { status as Status } from '@grpc/grpc-js';

/** The HTTP status of each gRPC code (google.rpc.Code's documented mapping, as grpc-gateway uses it). */
const HTTP_OF_CODE: Record<number, number> = {
  [Status.OK]: 200,
  [Status.CANCELLED]: 499,
  [Status.UNKNOWN]: 500,
  [Status.INVALID_ARGUMENT]: 400,
  [Status.DEADLINE_EXCEEDED]: 504,
  [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409,
  [Status.PERMISSION_DENIED]: 403,
  [Status.RESOURCE_EXHAUSTED]: 429,
  [Status.FAILED_PRECONDITION]: 400,
  [Status.ABORTED]: 409,
  [Status.OUT_OF_RANGE]: 400,
  [Status.UNIMPLEMENTED]: 501,
  [Status.INTERNAL]: 500,
  [Status.UNAVAILABLE]: 503,
  [Status.DATA_LOSS]: 500,
  [Status.UNAUTHENTICATED]: 401,
};

/** The HTTP status for a gRPC status code; an unknown code is a 500. */
export function httpStatusOf(code: number): number {
  return HTTP_OF_CODE[code] ?? 500;
}

/** google.rpc.Status in its JSON form: what every gateway error answers with. */
export interface RpcStatusJson {
  code: number;
  message: string;
  details: unknown[];
}

/** An error the gateway answers itself (before or instead of a call): its gRPC code, HTTP status and message. */
export class GatewayError extends Error {
  readonly httpStatus: number;

  constructor(
    readonly code: number,
    message: string,
    httpStatus?: number,
  ) {
    super(message);
    this.name = 'GatewayError';
    this.httpStatus = httpStatus ?? httpStatusOf(code);
  }

  toJSON(): RpcStatusJson {
    return { code: this.code, message: this.message, details: [] };
  }
}

/** The Status JSON of a gRPC call's end (a grpc-js ServiceError or StatusObject). */
export function statusJsonOf(err: { code: number; details?: string; message?: string }): RpcStatusJson {
  return { code: err.code, message: err.details ?? err.message ?? '', details: [] };
}

export { Status };
