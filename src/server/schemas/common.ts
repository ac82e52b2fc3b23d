import { Type, type Static } from '@sinclair/typebox';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      message: Type.String(),
      type: Type.String(),
      code: Type.String({ description: 'Stable machine-readable code, e.g. adapter_not_found.' }),
      param: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  { $id: 'ErrorResponse', description: 'OpenAI-style error.' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

export const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, Type.Ref(ErrorResponse)]));

export const Usage = Type.Object(
  {
    prompt_tokens: Type.Integer(),
    completion_tokens: Type.Integer(),
    total_tokens: Type.Integer(),
    prompt_tokens_details: Type.Object(
      {
        cached_tokens: Type.Integer({
          description:
            'Prompt tokens whose keys/values came from the prefix cache (or another choice of the prompt) instead of being computed.',
        }),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'Usage' },
);
