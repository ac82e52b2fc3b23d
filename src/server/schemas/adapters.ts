import { Type } from '@sinclair/typebox';
import { AdapterMixMember } from './openai.js';

export const AdapterName = Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,63}$', description: 'Adapter name.' });
export const AdapterParams = Type.Object({ name: Type.String({ description: 'Adapter name.' }) });

export const Adapter = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('adapter'),
    created: Type.Integer(),
    base_model: Type.String(),
    base_model_name_or_path: Type.Union([Type.String(), Type.Null()], { description: 'As recorded in adapter_config.json.' }),
    r: Type.Union([Type.Integer(), Type.Null()]),
    lora_alpha: Type.Union([Type.Number(), Type.Null()]),
    max_rank: Type.Union([Type.Integer(), Type.Null()], { description: 'Largest rank over its modules (rank_pattern may raise some).' }),
    target_modules: Type.Array(Type.String()),
    use_rslora: Type.Union([Type.Boolean(), Type.Null()]),
    use_dora: Type.Union([Type.Boolean(), Type.Null()], {
      description: 'DoRA: each adapted layer rescaled per output feature by its magnitude vector.',
    }),
    bias: Type.Union([Type.String(), Type.Null()]),
    size_bytes: Type.Integer(),
    tier: Type.Union([Type.Literal('disk'), Type.Literal('host'), Type.Literal('device')], { description: 'Cache tier it sits in now.' }),
    slot: Type.Union([Type.Integer(), Type.Null()], { description: 'Device slot when tier is device.' }),
    source: Type.Union([Type.Literal('store'), Type.Literal('path')]),
  },
  { $id: 'Adapter' },
);
export const AdapterList = Type.Object({ object: Type.Literal('list'), data: Type.Array(Type.Ref(Adapter)) }, { $id: 'AdapterList' });
export const AdapterDeleted = Type.Object(
  { id: Type.String(), object: Type.Literal('adapter'), deleted: Type.Literal(true) },
  { $id: 'AdapterDeleted' },
);

export const AdapterMixRequest = Type.Object(
  { adapters: Type.Array(Type.Ref(AdapterMixMember), { minItems: 1, description: 'The adapters and weights the mix stands for.' }) },
  { description: 'A named weighted mix: served as y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x; no weights are written.', additionalProperties: false },
);
export const AdapterMix = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('adapter_mix'),
    created: Type.Integer(),
    base_model: Type.String(),
    adapters: Type.Array(Type.Ref(AdapterMixMember)),
  },
  { $id: 'AdapterMix' },
);
export const AdapterMixDeleted = Type.Object({ id: Type.String(), object: Type.Literal('adapter_mix'), deleted: Type.Literal(true) });

export const AdapterUpload = Type.Object(
  {
    name: AdapterName,
    adapter_config: Type.Optional(Type.String({ format: 'binary', description: 'adapter_config.json' })),
    adapter_model: Type.Optional(Type.String({ format: 'binary', description: 'adapter_model.safetensors' })),
    archive: Type.Optional(Type.String({ format: 'binary', description: 'Or one .tar / .tar.gz holding both files.' })),
  },
  {
    description: 'multipart/form-data: a "name" field and either the two PEFT files or one tar archive. Files are recognised by file name.',
  },
);

export const LoadLoraAdapterRequest = Type.Object(
  {
    lora_name: AdapterName,
    lora_path: Type.String({ description: "Folder under the server's --lora-root." }),
    load_inplace: Type.Optional(
      Type.Boolean({
        description: 'Replace an adapter already loaded under this name (otherwise 409); the old one serves until the new one validates.',
      }),
    ),
  },
  { $id: 'LoadLoraAdapterRequest', additionalProperties: false },
);
export const UnloadLoraAdapterRequest = Type.Object(
  { lora_name: Type.String() },
  { $id: 'UnloadLoraAdapterRequest', additionalProperties: false },
);
