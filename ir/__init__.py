"""ncnn IR: parse, edit and write ncnn .param/.bin models."""
