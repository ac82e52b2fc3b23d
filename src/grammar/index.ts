export { StructuredOutput, type ResponseFormat, type StructuredOutputOptions } from './structured-output.js';
export { compilableSchema } from './schema-support.js';
export type { OutputConstraint, ConstraintWalker } from './output-constraint.js';
