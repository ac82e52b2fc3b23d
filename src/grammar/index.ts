export { StructuredOutput, type ResponseFormat, type StructuredOutputOptions } from './structured-output.js';
export { compilableSchema } from './schema-support.js';
export type { OutputConstraint, ConstraintWalker } from './output-constraint.js';
export {
  renderToolCall,
  ToolCallParser,
  TOOL_CALL_SYNTAX,
  type ToolCallEvent,
  type ToolCallGrammar,
  type ToolFunction,
} from './tool-calls.js';
