/** Runs one small graph on the WebGPU provider and prints `webgpu ok` (see webgpu.ts). */
import { OnnxSession } from '../../src/engine/onnx-backend.js';
import { GraphBuilder } from '../../src/model/graph-builder.js';
import { encodeModel, TensorDataType } from '../../src/model/onnx-proto.js';

const g = new GraphBuilder();
g.input({ name: 'x', elemType: TensorDataType.FLOAT, shape: ['n', 2] });
g.output(g.op('MatMul', ['x', g.constFloat([1, 2, 3, 4], [2, 2])]), { name: 'y', elemType: TensorDataType.FLOAT, shape: ['n', 2] });
const session = await OnnxSession.create({ bytes: encodeModel(g.graph('probe'), 17, 'probe') }, { provider: 'webgpu' });
const { host } = await session.run({ x: { type: 'float32', data: new Float32Array([1, 1]), dims: [1, 2] } });
if (Array.from(host.y!.data).join() !== '4,6') throw new Error(`webgpu computed ${Array.from(host.y!.data)}`);
await session.release();
console.log('webgpu ok');
