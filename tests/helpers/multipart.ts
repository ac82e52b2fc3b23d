/** The multipart body builder lives in src/testing, where the cluster driver uses it too. */
export { multipart } from '../../src/testing/index.js';
