// The tests run the pipeline exactly as the benchmark does: one implementation in bench/.
export { PipelineProcess, freePort, waitFor } from '../../bench/process.js';
