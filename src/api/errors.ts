/**
 * The API client's errors, in a module of their own: the CLI tells them apart
 * (exit 5, exit 1 with the agent's code) without loading the client and its
 * socket code for a command that never connects.
 */
import { AgentError } from '../util/errors.js';
import type { ApiErrorCode } from '../contracts/api.js';

export class AgentNotRunningError extends AgentError<'agent_not_running'> {
  constructor(message: string, options?: ErrorOptions) {
    super('agent_not_running', message, options);
  }
}

/** The agent refused a request: the API's error code (contracts/api.ts) and message. */
export class ApiRequestError extends AgentError<ApiErrorCode> {}
