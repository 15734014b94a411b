export { gatewayModule } from './module.js';
export { gatewayConfig, gatewayConfigSchema, type GatewayConfig } from './config.js';
export { buildRouteTable, loadRegistry, resolveRoute, type Route, type RouteTable } from './routes.js';
export { matchTemplate, parseTemplate, TemplateError, type PathTemplate } from './template.js';
export { httpStatusOf } from './status.js';
export { openapiDocument } from './openapi.js';
