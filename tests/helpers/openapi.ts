import { startTestServer } from './server.js';

/** The OpenAPI document the routes produce (independent of which model is loaded). */
export async function generateOpenApi(): Promise<unknown> {
  const server = await startTestServer();
  try {
    return server.app.swagger();
  } finally {
    await server.close();
  }
}
