"""Text generation: requests and detokenising (`request`), the continuous-batching scheduler (`scheduler`,
`sequence`), one step of each kind of language model (`stepping`) and sampling (`sampling`)."""
