// What `require('dotenv').config()` does: variables into process.env.
process.env.SECRET_FROM_DOTENV = "s3cret";
